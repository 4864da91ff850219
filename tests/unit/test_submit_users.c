/* submit/users.c: the users file, password checks, the auth cache. The
 * hashes are made here with libxcrypt at low cost (bcrypt 4, sha512crypt
 * 1000 rounds) so the tests stay fast; one is yescrypt as `volley user
 * add` makes them. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../submit/submit.h"
#include "unit.h"

static char dir[256], path[300];

static void setup(void)
{
	unit_tmpdir(dir, sizeof dir, "users");
	snprintf(path, sizeof path, "%s/users", dir);
}

static void teardown(void)
{
	unit_rmdir(dir);
}

/* A hash of pass with the given prefix and cost. */
static const char *hash(const char *prefix, unsigned long cost, const char *pass)
{
	static char out[8][CRYPT_OUTPUT_SIZE];
	static int k;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data d = {0};

	cr_assert_not_null(crypt_gensalt_rn(prefix, cost, NULL, 0, salt, sizeof salt));
	const char *h = crypt_rn(pass, salt, &d, sizeof d);
	cr_assert_not_null(h);
	k = (k + 1) % 8;
	return strcpy(out[k], h);
}

static void write_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

static struct sub_users *load(const char *text, const struct cfg_submission *d, char *err,
			      size_t errlen)
{
	write_file(text, 0640);
	return sub_users_load(path, d, err, errlen);
}

TestSuite(submit_users, .init = setup, .fini = teardown);

Test(submit_users, load_and_effective_settings)
{
	char text[4096], err[512] = "";
	struct cfg_submission d = {0};
	struct cfg_sub_user pu[1] = {{0}};

	cfg_sub_settings_init(&d.defaults);
	cfg_sub_settings_free(&d.defaults);
	d.defaults.priority = "bulk";
	d.defaults.max_recipients = 50;
	d.defaults.campaign = "default-campaign";
	d.auth_cache_ttl_ms = 300000;
	d.auth_cache_size = 16;
	cfg_sub_settings_init(&pu[0].s);
	pu[0].name = "bob";
	pu[0].s.rate_limit = "10/s";
	pu[0].s.dkim = 0;
	pu[0].s.max_recipients = 7;
	d.per_user = pu;
	d.nper_user = 1;
	snprintf(text, sizeof text,
		 "# users of the submission port\n\n"
		 "alice:%s:from_domains=example.com,*.example.org:campaign=news:"
		 "priority=transactional:rate_limit=100/m:dkim=yes:max_recipients=3\n"
		 "   \t\n"
		 "  # an indented comment\n"
		 "bob:%s:max_recipients=9  \r\n"
		 "carol@example.com:%s\n",
		 hash("$2b$", 4, "alice-pw"), hash("$6$", 1000, "bob-pw"), hash("$y$", 0, "carol-pw"));
	struct sub_users *u = load(text, &d, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	cr_assert_eq(sub_users_count(u), 3);
	cr_assert_str_eq(sub_users_at(u, 0)->name, "alice");
	cr_assert_str_eq(sub_users_at(u, 2)->name, "carol@example.com");
	cr_assert_null(sub_users_at(u, 3));

	const struct sub_user *a = sub_users_find(u, "alice");
	cr_assert_not_null(a);
	cr_assert_eq(a->nfrom_domains, 2);
	cr_assert_str_eq(a->from_domains[1], "*.example.org");
	cr_assert_null(a->from_domains[2]);
	cr_assert_str_eq(a->campaign, "news");
	cr_assert(a->transactional);
	cr_assert_str_eq(a->rate_limit, "100/m");
	cr_assert_float_eq(a->rate_per_s, 100.0 / 60, 1e-9);
	cr_assert(a->dkim);
	cr_assert_eq(a->max_recipients, 3);
	cr_assert(sub_user_from_ok(a, "example.com"));
	cr_assert(sub_user_from_ok(a, "News.Example.ORG"));
	cr_assert_not(sub_user_from_ok(a, "example.org"));
	cr_assert_not(sub_user_from_ok(a, "evil.example"));

	/* bob: his line, then per_user, then the defaults */
	const struct sub_user *b = sub_users_find(u, "bob");
	cr_assert_not_null(b);
	cr_assert_eq(b->max_recipients, 9);
	cr_assert_str_eq(b->rate_limit, "10/s");
	cr_assert_float_eq(b->rate_per_s, 10.0, 1e-9);
	cr_assert_not(b->dkim);
	cr_assert_not(b->transactional);
	cr_assert_str_eq(b->campaign, "default-campaign");
	cr_assert_eq(b->nfrom_domains, 0);
	cr_assert(sub_user_from_ok(b, "anything.example"));

	/* carol: the defaults, then the built-in ones */
	const struct sub_user *c = sub_users_find(u, "carol@example.com");
	cr_assert_not_null(c);
	cr_assert_eq(c->max_recipients, 50);
	cr_assert_null(c->rate_limit);
	cr_assert_eq(c->rate_per_s, 0);
	cr_assert(c->dkim);
	cr_assert_null(sub_users_find(u, "Alice"));
	cr_assert_null(sub_users_find(u, "dave"));
	sub_users_free(u);

	/* no configuration at all: built-in defaults */
	u = load(text, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	c = sub_users_find(u, "carol@example.com");
	cr_assert(c->transactional);
	cr_assert_eq(c->max_recipients, 100);
	cr_assert_null(c->campaign);
	sub_users_free(u);
}

Test(submit_users, verify_passwords)
{
	char text[2048], err[512] = "";
	const struct sub_user *who;
	struct sub_users_stats st;

	snprintf(text, sizeof text, "app:%s\nyes:%s\n", hash("$2b$", 4, "s3cret"),
		 hash("$y$", 0, "pw"));
	struct sub_users *u = load(text, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	cr_assert_eq(sub_users_verify(u, "app", "s3cret", &who), 0);
	cr_assert_str_eq(who->name, "app");
	cr_assert_eq(sub_users_verify(u, "yes", "pw", &who), 0);
	cr_assert_str_eq(who->name, "yes");
	cr_assert_eq(sub_users_verify(u, "app", "s3cret ", &who), -1);
	cr_assert_null(who);
	cr_assert_eq(sub_users_verify(u, "app", "", &who), -1);
	cr_assert_eq(sub_users_verify(u, "nobody", "s3cret", &who), -1);
	cr_assert_eq(sub_users_verify(u, "APP", "s3cret", NULL), -1);
	cr_assert_eq(sub_users_verify(u, "", "s3cret", NULL), -1);
	cr_assert_eq(sub_users_verify(u, NULL, "s3cret", NULL), -1);
	cr_assert_eq(sub_users_verify(u, "app", NULL, NULL), -1);
	char big[SUB_PASS_MAX + 2];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cr_assert_eq(sub_users_verify(u, "app", big, NULL), -1);
	sub_users_stats(u, vl_now_ms(), &st);
	cr_assert_eq(st.verified, 2);
	cr_assert_eq(st.failed, 8);
	cr_assert_eq(st.cache_hits, 0);
	sub_users_free(u);
}

Test(submit_users, auth_cache_hits_expires_and_never_keeps_failures)
{
	char text[2048], err[512] = "";
	struct cfg_submission d = {0};
	const struct sub_user *who;
	struct sub_users_stats st;

	cfg_sub_settings_init(&d.defaults);
	d.auth_cache_ttl_ms = 60000;
	d.auth_cache_size = 64;
	snprintf(text, sizeof text, "app:%s\nother:%s\n", hash("$2b$", 4, "pw"),
		 hash("$2b$", 4, "pw"));
	struct sub_users *u = load(text, &d, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	/* failures are not remembered */
	cr_assert_eq(sub_users_verify_at(u, "app", "wrong", 1000, NULL), -1);
	cr_assert_eq(sub_users_verify_at(u, "app", "wrong", 1001, NULL), -1);
	sub_users_stats(u, 1001, &st);
	cr_assert_eq(st.cache_hits, 0);
	cr_assert_eq(st.cache_entries, 0);
	/* a success is */
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 1000, &who), 0);
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 2000, &who), 0);
	cr_assert_str_eq(who->name, "app");
	sub_users_stats(u, 2000, &st);
	cr_assert_eq(st.cache_hits, 1);
	cr_assert_eq(st.cache_entries, 1);
	/* the same password for another name is another key */
	cr_assert_eq(sub_users_verify_at(u, "other", "pw", 2000, &who), 0);
	cr_assert_str_eq(who->name, "other");
	/* a wrong password for a cached name still fails, uncached */
	cr_assert_eq(sub_users_verify_at(u, "app", "pw2", 2000, NULL), -1);
	cr_assert_eq(sub_users_verify_at(u, "app", "p", 2000, NULL), -1);
	sub_users_stats(u, 2000, &st);
	cr_assert_eq(st.cache_hits, 1);
	cr_assert_eq(st.cache_entries, 2);
	/* expiry: counted from the success that stored it */
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 60999, NULL), 0);
	sub_users_stats(u, 60999, &st);
	cr_assert_eq(st.cache_hits, 2);
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 61000, NULL), 0);
	sub_users_stats(u, 61000, &st);
	cr_assert_eq(st.cache_hits, 2, "an expired entry must not hit");
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 61001, NULL), 0);
	sub_users_stats(u, 61001, &st);
	cr_assert_eq(st.cache_hits, 3);
	cr_assert_eq(st.verified, 6);
	cr_assert_eq(st.failed, 4);
	sub_users_free(u);

	/* a reload is a new sub_users: an empty cache */
	u = load(text, &d, err, sizeof err);
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 61002, NULL), 0);
	sub_users_stats(u, 61002, &st);
	cr_assert_eq(st.cache_hits, 0);
	sub_users_free(u);

	/* auth_cache_ttl 0: no cache */
	d.auth_cache_ttl_ms = 0;
	u = load(text, &d, err, sizeof err);
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 1, NULL), 0);
	cr_assert_eq(sub_users_verify_at(u, "app", "pw", 2, NULL), 0);
	sub_users_stats(u, 2, &st);
	cr_assert_eq(st.cache_hits, 0);
	cr_assert_eq(st.cache_entries, 0);
	sub_users_free(u);
}

Test(submit_users, auth_cache_is_bounded)
{
	struct vl_buf b;
	char err[512] = "", name[16];
	struct cfg_submission d = {0};
	struct sub_users_stats st;

	cfg_sub_settings_init(&d.defaults);
	d.auth_cache_ttl_ms = 60000;
	d.auth_cache_size = 4;           /* one set of four */
	vl_buf_init(&b);
	const char *h = hash("$2b$", 4, "pw");
	for (int i = 0; i < 6; i++)
		vl_buf_printf(&b, "u%d:%s\n", i, h);
	vl_buf_append(&b, "", 1);
	struct sub_users *u = load(b.p, &d, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "u%d", i);
		cr_assert_eq(sub_users_verify_at(u, name, "pw", 100 + (uint64_t)i, NULL), 0);
	}
	sub_users_stats(u, 200, &st);
	cr_assert_eq(st.cache_entries, 4);
	/* the least recently used went: u0 and u1 are checked again, u5 hits */
	cr_assert_eq(sub_users_verify_at(u, "u5", "pw", 200, NULL), 0);
	cr_assert_eq(sub_users_verify_at(u, "u0", "pw", 200, NULL), 0);
	sub_users_stats(u, 200, &st);
	cr_assert_eq(st.cache_hits, 1);
	sub_users_free(u);
	vl_buf_free(&b);
}

struct race {
	struct sub_users *u;
	int ok;
};

static void *racer(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < 20; i++) {
		r->ok += sub_users_verify(r->u, "app", "pw", NULL) == 0;
		r->ok += sub_users_verify(r->u, "app", "bad", NULL) == -1;
		/* an unknown name costs a yescrypt (~0.1 s): a few only */
		r->ok += i >= 2 || sub_users_verify(r->u, "ghost", "pw", NULL) == -1;
	}
	return NULL;
}

Test(submit_users, verify_from_many_threads)
{
	char text[1024], err[512] = "";
	struct sub_users_stats st;
	pthread_t t[4];
	struct race r[4];

	snprintf(text, sizeof text, "app:%s\n", hash("$2b$", 4, "pw"));
	struct sub_users *u = load(text, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){ u, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, racer, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].ok, 60);
	}
	sub_users_stats(u, vl_now_ms(), &st);
	cr_assert_eq(st.verified, 80);
	cr_assert_eq(st.failed, 88);
	cr_assert_geq(st.cache_hits, 76);
	sub_users_free(u);
}

Test(submit_users, bad_lines_name_file_line_and_what)
{
	const char *ok = hash("$6$", 1000, "pw");
	char good[300];
	snprintf(good, sizeof good, "%s", ok);
	char trunc[300];
	snprintf(trunc, sizeof trunc, "%.*s", (int)strlen(good) - 3, good);
	const struct { const char *line, *want; } bad[] = {
		{ "nocolon", ":2: expected name:hash" },
		{ "bad name:%s", ":2: user name 'bad name'" },
		{ ":%s", ":2: user name ''" },
		{ "u:abcdefghijklm", "not a $id$ crypt hash" },
		{ "u:", "not a $id$ crypt hash" },
		{ "u:$9$xyz$abc", "does not know" },
		{ "u:!$6$x$y", "not a $id$" },
		{ "u:$y$j9T$abc$def", "malformed hash" },
		{ "u:TRUNC", "malformed hash" },
		{ "u:%s:color=red", "user u: color: unknown key" },
		{ "u:%s:priority=urgent", "user u: priority: expected bulk or transactional" },
		{ "u:%s:rate_limit=fast", "user u: rate_limit: not a rate" },
		{ "u:%s:dkim=maybe", "user u: dkim: expected yes or no" },
		{ "u:%s:max_recipients=0", "max_recipients: expected 1 to 100000" },
		{ "u:%s:from_domains=a.example,,b.example", "from_domains: expected domain" },
		{ "u:%s:from_domains=", "from_domains: expected domain" },
		{ "u:%s:campaign=", "campaign: expected 1 to 256" },
		{ "u:%s:dkim=yes:dkim=no", "user u: dkim given twice" },
		{ "u:%s:novalue", "user u: 'novalue': expected key=value" },
		{ "u:%s:=x", "expected key=value" },
		{ "u:%s:", "expected key=value" },
	};
	char line[600], text[1200], err[512];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (!strcmp(bad[i].line, "u:TRUNC"))
			snprintf(line, sizeof line, "u:%s", trunc);
		else
			snprintf(line, sizeof line, bad[i].line, ok);
		snprintf(text, sizeof text, "# first\n%s\nlast:%s\n", line, ok);
		err[0] = '\0';
		cr_assert_null(load(text, NULL, err, sizeof err), "accepted: %s", line);
		cr_assert(strstr(err, path), "%s: %s", line, err);
		cr_assert(strstr(err, ":2: "), "%s: %s", line, err);
		cr_assert(strstr(err, bad[i].want), "%s: '%s' lacks '%s'", line, err, bad[i].want);
	}
	/* a user twice: the second line is named, and the first */
	snprintf(text, sizeof text, "a:%s\nb:%s\n\na:%s\n", ok, ok, ok);
	cr_assert_null(load(text, NULL, err, sizeof err));
	cr_assert(strstr(err, ":4: user a again (first on line 1)"), "%s", err);
	/* a NUL */
	FILE *f = fopen(path, "w");
	fprintf(f, "a:%s\nb", ok);
	fputc('\0', f);
	fprintf(f, ":%s\n", ok);
	fclose(f);
	cr_assert_null(sub_users_load(path, NULL, err, sizeof err));
	cr_assert(strstr(err, ":2: holds a NUL"), "%s", err);
	/* legacy but $id$ (md5crypt) is still computed by crypt: accepted */
	snprintf(text, sizeof text, "m:%s\n", hash("$1$", 0, "pw"));
	struct sub_users *u = load(text, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	cr_assert_eq(sub_users_verify(u, "m", "pw", NULL), 0);
	sub_users_free(u);
}

Test(submit_users, file_checks)
{
	char text[400], err[512];

	snprintf(text, sizeof text, "a:%s\n", hash("$2b$", 4, "pw"));
	write_file(text, 0644);
	cr_assert_null(sub_users_load(path, NULL, err, sizeof err));
	cr_assert(strstr(err, "readable or writable by others (mode 0644)"), "%s", err);
	cr_assert(strstr(err, "chmod o-rwx"), "%s", err);
	write_file(text, 0602);
	cr_assert_null(sub_users_load(path, NULL, err, sizeof err));
	cr_assert(strstr(err, "(mode 0602)"), "%s", err);
	write_file(text, 0600);
	struct sub_users *u = sub_users_load(path, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	sub_users_free(u);
	cr_assert_null(sub_users_load(dir, NULL, err, sizeof err));
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	char missing[400];
	snprintf(missing, sizeof missing, "%s/none", dir);
	cr_assert_null(sub_users_load(missing, NULL, err, sizeof err));
	cr_assert(strstr(err, "No such file"), "%s", err);
	/* an empty file is no error: nobody may log in */
	write_file("# nobody yet\n", 0600);
	u = sub_users_load(path, NULL, err, sizeof err);
	cr_assert_not_null(u, "%s", err);
	cr_assert_eq(sub_users_count(u), 0);
	cr_assert_eq(sub_users_verify(u, "a", "pw", NULL), -1);
	sub_users_free(u);
}

Test(submit_users, hash_password)
{
	char h[SUB_HASH_MAX], err[200];
	struct crypt_data d = {0};

	cr_assert_eq(sub_hash_password("correct horse", h, err, sizeof err), 0, "%s", err);
	cr_assert_eq(strncmp(h, "$y$", 3), 0, "%s", h);
	cr_assert_str_eq(crypt_rn("correct horse", h, &d, sizeof d), h);
	char h2[SUB_HASH_MAX];
	cr_assert_eq(sub_hash_password("correct horse", h2, err, sizeof err), 0);
	cr_assert_str_neq(h, h2, "a new salt each time");
	cr_assert_eq(sub_hash_password("", h, err, sizeof err), -1);
	cr_assert(strstr(err, "empty"));
	cr_assert_eq(sub_hash_password("a\nb", h, err, sizeof err), -1);
	cr_assert(strstr(err, "line end"));
}
