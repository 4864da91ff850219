/* cluster/: the redis:// URL, the shared <-> local state machine, rate
 * leases and their fallback bucket, the `cluster` configuration and its
 * TLS files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../../cluster/cluster.h"
#include "../../tls/tls.h"
#include "unit_cfg.h"

/* ---- URL ---- */

Test(cluster_url, good)
{
	struct clu_url u;
	char err[200];

	cr_assert_eq(clu_url_parse("redis://127.0.0.1:6380/3", &u, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(u.host, "127.0.0.1");
	cr_assert_eq(u.port, 6380);
	cr_assert_eq(u.db, 3);
	cr_assert_str_eq(u.pass, "");
	cr_assert_eq(clu_url_parse("redis://redis.example", &u, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(u.host, "redis.example");
	cr_assert_eq(u.port, 6379);
	cr_assert_eq(u.db, 0);
	cr_assert_eq(clu_url_parse("redis://:s3cr@t@[::1]:7000/", &u, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(u.host, "::1");
	cr_assert_eq(u.port, 7000);
	cr_assert_str_eq(u.user, "");
	cr_assert_str_eq(u.pass, "s3cr@t", "the last '@' ends the credentials");
	cr_assert_eq(clu_url_parse("redis://volley:pw@10.0.0.5/15", &u, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(u.user, "volley");
	cr_assert_str_eq(u.pass, "pw");
	cr_assert_eq(u.db, 15);
	cr_assert_not(u.tls);
	cr_assert_eq(clu_url_parse("rediss://:pw@redis.example/2", &u, err, sizeof err), 0, "%s", err);
	cr_assert(u.tls, "rediss:// is TLS");
	cr_assert_str_eq(u.host, "redis.example");
	cr_assert_eq(u.port, 6379);
	cr_assert_eq(u.db, 2);
	cr_assert_str_eq(u.pass, "pw");
	cr_assert_eq(clu_url_parse("rediss://[::1]:6380", &u, err, sizeof err), 0, "%s", err);
	cr_assert(u.tls);
	cr_assert_str_eq(u.host, "::1");
	cr_assert_eq(u.port, 6380);
}

static void bad_url(const char *s, const char *what)
{
	struct clu_url u;
	char err[200] = "";

	cr_assert_eq(clu_url_parse(s, &u, err, sizeof err), -1, "%s", s);
	cr_assert_not_null(strstr(err, what), "%s: %s", s, err);
}

Test(cluster_url, bad)
{
	bad_url("http://127.0.0.1:6379", "expected redis[s]://");
	bad_url("redis:/h", "expected redis[s]://");
	bad_url("redisss://h", "expected redis[s]://");
	bad_url("rediss://", "no host");
	bad_url("rediss://h:0", "port");
	bad_url("redis://", "no host");
	bad_url("redis://:6379", "no host");
	bad_url("redis://h:0", "port");
	bad_url("redis://h:65536", "port");
	bad_url("redis://h:63a", "port");
	bad_url("redis://h:", "port");
	bad_url("redis://h/16", "database");
	bad_url("redis://h/x", "database");
	bad_url("redis://h?db=1", "query");
	bad_url("redis://[::1", "']'");
	bad_url("redis://[::1]x", "after ']'");
	bad_url("redis://user@h", "user:password@");
	bad_url("redis://user:@h", "empty password");
	bad_url("redis://h st", "character");
	char longhost[400];
	memset(longhost, 'a', sizeof longhost);
	memcpy(longhost, "redis://", 8);
	longhost[sizeof longhost - 1] = 0;
	bad_url(longhost, "too long");
}

/* ---- the state machine ---- */

Test(cluster_fsm, local_shared_local)
{
	struct clu_fsm f;

	clu_fsm_init(&f, 0);
	cr_assert_eq(f.mode, CLU_LOCAL, "local until Redis answers");
	cr_assert_eq(f.nodes, 1);
	cr_assert_not(clu_fsm_step(&f, CLU_IN_REPLY, 0, 100, 1000));
	cr_assert(clu_fsm_step(&f, CLU_IN_UP, 3, 200, 1000), "first heartbeat answer");
	cr_assert_eq(f.mode, CLU_SHARED);
	cr_assert_eq(f.nodes, 3);
	cr_assert_not(clu_fsm_step(&f, CLU_IN_UP, 3, 300, 1000), "no change, no event");
	cr_assert(clu_fsm_step(&f, CLU_IN_DOWN, 0, 400, 1000));
	cr_assert_eq(f.mode, CLU_LOCAL);
	cr_assert_eq(f.nodes, 3, "N stays the last seen");
	cr_assert_not(clu_fsm_step(&f, CLU_IN_DOWN, 0, 500, 1000));
	cr_assert(clu_fsm_step(&f, CLU_IN_UP, 2, 600, 1000));
	cr_assert_eq(f.nodes, 2);
}

Test(cluster_fsm, unanswered_is_down)
{
	struct clu_fsm f;

	clu_fsm_init(&f, 4);
	clu_fsm_step(&f, CLU_IN_UP, 0, 1000, 1000);
	cr_assert_eq(f.nodes, 4, "N from the state file until a heartbeat says");
	f.waiting_since_ms = 1500;
	cr_assert_not(clu_fsm_step(&f, CLU_IN_TICK, 0, 2500, 1000), "1000 ms: still waiting");
	cr_assert(clu_fsm_step(&f, CLU_IN_TICK, 0, 2501, 1000));
	cr_assert_eq(f.mode, CLU_LOCAL);
	f.waiting_since_ms = 0;
	cr_assert_not(clu_fsm_step(&f, CLU_IN_TICK, 0, 99999, 1000), "nothing asked: no timeout");
}

/* ---- leases ---- */

Test(cluster_lease, want_sized_to_rate)
{
	struct clu_rate r;

	clu_rate_init(&r, 500);
	cr_assert_eq(clu_rate_want(&r, 1), 125, "a quarter second of the whole limit");
	cr_assert_eq(clu_rate_want(&r, 3), 41, "a quarter second of a third");
	r.recent = 800;
	cr_assert_eq(clu_rate_want(&r, 3), 166, "capped at the burst / N");
	r.recent = 200;
	cr_assert_eq(clu_rate_want(&r, 3), 50, "the recent rate when above limit / N");
	clu_rate_init(&r, 0.5);
	cr_assert_eq(clu_rate_want(&r, 10), 1, "at least one");
}

Test(cluster_lease, shared_spends_grants_and_asks_early)
{
	struct clu_rate r;
	bool ask;
	uint64_t now = 10000;

	clu_rate_init(&r, 100);
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 2, now, &ask), CLU_LEASE_POLL_MS);
	cr_assert(ask, "nothing held: ask");
	cr_assert_eq(r.last_want, 12);
	r.asked = true;
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 2, now, &ask), CLU_LEASE_POLL_MS);
	cr_assert_not(ask, "one request at a time");
	clu_rate_granted(&r, 12, 0, now);
	cr_assert_not(r.asked);
	int spent = 0;
	for (int i = 0; i < 20; i++) {
		if (clu_rate_take(&r, CLU_SHARED, 2, now, &ask) == 0)
			spent++;
		if (ask) {
			cr_assert_eq(r.tokens, 4, "asks again below half a lease");
			r.asked = true;
		}
	}
	cr_assert_eq(spent, 12, "exactly what was granted");
	cr_assert_eq(r.tokens, 0);
}

Test(cluster_lease, none_granted_waits_as_told)
{
	struct clu_rate r;
	bool ask;

	clu_rate_init(&r, 100);
	clu_rate_take(&r, CLU_SHARED, 1, 1000, &ask);
	r.asked = true;
	clu_rate_granted(&r, 0, 120, 1000);
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 1, 1000, &ask), 120);
	cr_assert_not(ask, "not before Redis said");
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 1, 1119, &ask), 1);
	cr_assert_not(ask);
	clu_rate_take(&r, CLU_SHARED, 1, 1120, &ask);
	cr_assert(ask);
}

Test(cluster_lease, lease_usable_from_its_start)
{
	struct clu_rate r;
	bool ask;

	clu_rate_init(&r, 100);
	clu_rate_granted(&r, 50, 300, 1000);
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 1, 1000, &ask), 300, "scheduled by Redis");
	cr_assert_not(ask, "no second lease before the first one starts");
	cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 1, 1000, &ask), 0,
		     "local mode: the local bucket, not the future lease");
	cr_assert_eq(r.tokens, 50);
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 1, 1300, &ask), 0);
	cr_assert_eq(r.tokens, 49);
	cr_assert_neq(clu_rate_take(&r, CLU_SHARED, 1, 2301, &ask), 0, "held too long");
	cr_assert_eq(r.tokens, 0);
}

Test(cluster_lease, stale_tokens_dropped)
{
	struct clu_rate r;
	bool ask;

	clu_rate_init(&r, 100);
	clu_rate_granted(&r, 50, 0, 1000);
	cr_assert_eq(clu_rate_take(&r, CLU_SHARED, 1, 1000 + CLU_LEASE_HOLD_MS, &ask), 0);
	cr_assert_neq(clu_rate_take(&r, CLU_SHARED, 1, 1001 + CLU_LEASE_HOLD_MS, &ask), 0,
		      "a lease older than the hold time is gone");
	cr_assert_eq(r.tokens, 0);
}

Test(cluster_lease, local_is_one_nth)
{
	struct clu_rate r;
	bool ask;
	uint64_t now = 5000;
	unsigned sent = 0;

	clu_rate_init(&r, 300);
	/* 10 s at 1 ms steps, 3 nodes: 100/s, plus one second's burst */
	for (uint64_t t = now; t < now + 10000; t++)
		while (clu_rate_take(&r, CLU_LOCAL, 3, t, &ask) == 0) {
			cr_assert_not(ask, "local mode asks nobody");
			sent++;
		}
	cr_assert(sent >= 1095 && sent <= 1101, "%u sent", sent);
	clu_rate_init(&r, 2);
	cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 4, 0, &ask), 0, "burst of at least one");
	cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 4, 0, &ask), 2000, "then 0.5/s");
}

Test(cluster_lease, local_spends_shared_tokens_first)
{
	struct clu_rate r;
	bool ask;

	clu_rate_init(&r, 10);
	clu_rate_granted(&r, 3, 0, 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 10, 1, &ask), 0);
	cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 10, 1, &ask), 0, "the local bucket's one");
	cr_assert_eq(clu_rate_take(&r, CLU_LOCAL, 10, 1, &ask), 1000);
}

Test(cluster_conns, allowed)
{
	cr_assert_eq(clu_conns_allowed(CLU_SHARED, 3, 30, 10, 30), 10, "the grant");
	cr_assert_eq(clu_conns_allowed(CLU_SHARED, 3, 30, 10, 4), 4, "no more than wanted");
	cr_assert_eq(clu_conns_allowed(CLU_SHARED, 3, 30, 0, 30), 0, "none granted yet");
	cr_assert_eq(clu_conns_allowed(CLU_LOCAL, 3, 30, 0, 30), 10, "local: 1/N");
	cr_assert_eq(clu_conns_allowed(CLU_LOCAL, 4, 30, 29, 30), 7, "local ignores the grant");
	cr_assert_eq(clu_conns_allowed(CLU_LOCAL, 50, 30, 0, 30), 1, "at least one");
	cr_assert_eq(clu_conns_allowed(CLU_LOCAL, 0, 30, 0, 30), 30, "N 0 counts as 1");
}

/* ---- configuration ---- */

static void refused(const char *text, const char *what)
{
	struct cfg c = { 0 };
	char err[512];

	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), -1, "%s", text);
	cr_assert_not_null(strstr(err, what), "%s: %s", text, err);
	cfg_free(&c);
}

Test(cluster_config, good_and_off)
{
	struct cfg c = { 0 };
	char err[512], pw[] = "/tmp/volley-unit-clupw-XXXXXX";
	int fd = mkstemp(pw);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hunter2\nrest\n", 13), 13);
	close(fd);
	cr_assert_eq(unit_cfg_load(&c, "", err, sizeof err), 0, "%s", err);
	cr_assert_not(c.cluster.on, "off unless set");
	cfg_free(&c);
	char text[600];
	snprintf(text, sizeof text, "cluster = { redis = \"redis://127.0.0.1:6390/2\"; "
		 "node = \"node-a\"; password_file = \"%s\"; lease_ttl = \"5s\"; };", pw);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert(c.cluster.on);
	cr_assert_str_eq(c.cluster.node, "node-a");
	cr_assert_str_eq(c.cluster.password, "hunter2", "the file's first line");
	cr_assert_eq(c.cluster.lease_ttl_ms, 5000);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_not_null(strstr(b.p, "node = \"node-a\""));
	cr_assert_null(strstr(b.p, "hunter2"), "never the password");
	vl_buf_free(&b);
	cfg_free(&c);
	unlink(pw);
}

Test(cluster_config, bad)
{
	refused("cluster = { node = \"a\"; };", "cluster.redis: needed");
	struct cfg c = { 0 };
	char err[512];
	cr_assert_eq(unit_cfg_load(&c, "cluster = { redis = \"redis://u:pw42@h:1/0\"; node = \"a\"; };",
				   err, sizeof err), 0, "%s", err);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_null(strstr(b.p, "pw42"), "the URL's password is not printed");
	cr_assert_not_null(strstr(b.p, "redis://HIDDEN@h:1/0"));
	vl_buf_free(&b);
	cfg_free(&c);
	refused("cluster = { redis = \"http://x\"; node = \"a\"; };", "cluster.redis");
	refused("cluster = { redis = \"redis://x\"; };", "cluster.node: needed");
	refused("cluster = { redis = \"redis://x\"; node = \"a b\"; };", "cluster.node");
	refused("cluster = { redis = \"redis://x\"; node = \"a\"; lease_ttl = \"100ms\"; };",
		"cluster.lease_ttl");
	refused("cluster = { redis = \"redis://x\"; node = \"a\"; nodes = 3; };",
		"cluster.nodes: unknown key");
	refused("cluster = { redis = \"redis://x\"; node = \"a\"; "
		"password_file = \"/nonexistent/pw\"; };", "cluster.password_file");
}

/* ---- TLS: configuration and files ---- */

/* A self-signed certificate and its key in PEM files (from the tls
 * module's generator). */
static void pem_pair(char *cert, char *key)
{
	char err[256];
	SSL_CTX *ctx = tls_server_ctx_new(NULL, NULL, "redis.test", err, sizeof err);

	cr_assert_not_null(ctx, "%s", err);
	int cfd = mkstemp(cert), kfd = mkstemp(key);
	cr_assert(cfd >= 0 && kfd >= 0);
	FILE *c = fdopen(cfd, "w"), *k = fdopen(kfd, "w");
	cr_assert(PEM_write_X509(c, SSL_CTX_get0_certificate(ctx)));
	cr_assert(PEM_write_PrivateKey(k, SSL_CTX_get0_privatekey(ctx), NULL, NULL, 0, NULL, NULL));
	fclose(c);
	fclose(k);
	tls_ctx_free(ctx);
}

static char *tmp_text(const char *text)
{
	char *p = strdup("/tmp/volley-unit-clutls-XXXXXX");
	int fd = mkstemp(p);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return p;
}

Test(cluster_config, tls_keys)
{
	struct cfg c = { 0 };
	char err[512], text[1200];
	char *ca = tmp_text("ca\n"), *crt = tmp_text("crt\n"), *key = tmp_text("key\n");

	snprintf(text, sizeof text, "cluster = { redis = \"redis://r.example\"; node = \"a\"; "
		 "tls = true; tls_ca_file = \"%s\"; tls_cert = \"%s\"; tls_key = \"%s\"; "
		 "tls_server_name = \"redis.internal\"; };", ca, crt, key);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert(c.cluster.tls);
	cr_assert_str_eq(c.cluster.tls_ca_file, ca);
	cr_assert_str_eq(c.cluster.tls_cert, crt);
	cr_assert_str_eq(c.cluster.tls_key, key);
	cr_assert_str_eq(c.cluster.tls_server_name, "redis.internal");
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_not_null(strstr(b.p, "tls = true;"), "%s", b.p);
	cr_assert_not_null(strstr(b.p, "tls_server_name = \"redis.internal\""), "%s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);
	/* rediss:// alone is TLS: the tls_* keys are taken; its password hidden */
	snprintf(text, sizeof text, "cluster = { redis = \"rediss://:pw42@r.example:6380\"; "
		 "node = \"a\"; tls_ca_file = \"%s\"; };", ca);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert_not(c.cluster.tls, "the key stays as written");
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_not_null(strstr(b.p, "rediss://HIDDEN@r.example:6380"), "%s", b.p);
	cr_assert_null(strstr(b.p, "pw42"));
	vl_buf_free(&b);
	cfg_free(&c);
	unlink(ca);
	unlink(crt);
	unlink(key);
	free(ca);
	free(crt);
	free(key);
}

Test(cluster_config, tls_keys_bad)
{
	char text[800];
	char *f = tmp_text("x\n");

	refused("cluster = { redis = \"redis://x\"; node = \"a\"; tls_ca_file = \"/etc/hostname\"; };",
		"cluster.tls_ca_file: only with tls = true or a rediss:// URL");
	refused("cluster = { redis = \"redis://x\"; node = \"a\"; tls_server_name = \"r\"; };",
		"cluster.tls_server_name: only with tls");
	refused("cluster = { redis = \"rediss://x\"; node = \"a\"; tls_ca_file = \"/nonexistent/ca\"; };",
		"cluster.tls_ca_file: /nonexistent/ca");
	snprintf(text, sizeof text, "cluster = { redis = \"rediss://x\"; node = \"a\"; "
		 "tls_cert = \"%s\"; };", f);
	refused(text, "cluster.tls_key: tls_cert and tls_key go together");
	snprintf(text, sizeof text, "cluster = { redis = \"redis://x\"; tls = true; node = \"a\"; "
		 "tls_key = \"%s\"; };", f);
	refused(text, "cluster.tls_cert: tls_cert and tls_key go together");
	refused("cluster = { redis = \"redis://x\"; tls = true; node = \"a\"; "
		"tls_cert = \"/nonexistent/c\"; tls_key = \"/nonexistent/k\"; };",
		"cluster.tls_cert: /nonexistent/c");
	refused("cluster = { redis = \"rediss://x\"; node = \"a\"; tls_server_name = \"a b\"; };",
		"cluster.tls_server_name: expected a host name");
	refused("cluster = { redis = \"rediss://x\"; node = \"a\"; tls = \"yes\"; };", "cluster.tls");
	refused("cluster = { redis = \"redis://x\"; node = \"a\"; tls_ca = \"f\"; };",
		"cluster.tls_ca: unknown key");
	unlink(f);
	free(f);
}

static void check_refused(const char *url, const struct clu_tls_opts *t, const char *what)
{
	char err[512] = "";

	cr_assert_eq(clu_check(url, t, err, sizeof err), -1, "%s", url);
	cr_assert_not_null(strstr(err, what), "%s: %s", url, err);
}

/* The files as the client loads them: a CA file without a certificate, a
 * certificate that is none, a key of another certificate. */
Test(cluster_tls, files_checked)
{
	char c1[] = "/tmp/volley-unit-c1-XXXXXX", k1[] = "/tmp/volley-unit-k1-XXXXXX";
	char c2[] = "/tmp/volley-unit-c2-XXXXXX", k2[] = "/tmp/volley-unit-k2-XXXXXX";
	char err[512] = "";
	char *junk = tmp_text("not a certificate\n");

	pem_pair(c1, k1);
	pem_pair(c2, k2);
	struct clu_tls_opts t = { .on = true, .ca_file = c1 };
	cr_assert_eq(clu_check("redis://127.0.0.1", &t, err, sizeof err), 0, "%s", err);
	cr_assert_eq(clu_check("redis://127.0.0.1", NULL, err, sizeof err), 0, "plain: nothing to load");
	t = (struct clu_tls_opts){ .on = true, .ca_file = junk };
	check_refused("redis://h", &t, "cluster.tls_ca_file: ");
	t = (struct clu_tls_opts){ .ca_file = junk };
	check_refused("rediss://h", &t, "cluster.tls_ca_file: ");
	cr_assert_eq(clu_check("redis://h", &t, err, sizeof err), 0, "TLS off: files unused");
	t = (struct clu_tls_opts){ .on = true, .ca_file = c1, .cert = junk, .key = k1 };
	check_refused("redis://h", &t, "cluster.tls_cert: ");
	t = (struct clu_tls_opts){ .on = true, .ca_file = c1, .cert = c1, .key = k2 };
	check_refused("redis://h", &t, "cluster.tls_key: ");
	t = (struct clu_tls_opts){ .on = true, .ca_file = c1, .cert = c1, .key = junk };
	check_refused("redis://h", &t, "cluster.tls_key: ");
	t = (struct clu_tls_opts){ .on = true, .ca_file = c2, .cert = c1, .key = k1 };
	cr_assert_eq(clu_check("rediss://h:6380/1", &t, err, sizeof err), 0, "%s", err);
	check_refused("rediss://h:0", &t, "cluster.redis: ");
	for (char *p[] = { c1, k1, c2, k2, junk }, **q = p; q < p + 5; q++)
		unlink(*q);
	free(junk);
}
