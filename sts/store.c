/*
 * The policy store: one JSON file a domain ({"id", "fetched", "policy"}),
 * written whole and renamed into place, so a crash leaves the old policy
 * or the new one. The parsed policy is kept in memory, by domain.
 */
#include "sts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sts_store {
	char dir[1024];
	json_t *index;               /* domain -> (intptr_t) struct sts_entry * */
};

/* A file name must be the domain itself, already in lower case:
 * nothing from a peer picks a path. */
static bool file_name_ok(const char *d)
{
	char norm[254];

	return vl_domain_norm(d, norm) == 0 && strcmp(norm, d) == 0;
}

static struct sts_entry *find(const struct sts_store *s, const char *domain)
{
	json_t *v = json_object_get(s->index, domain);

	return v ? (struct sts_entry *)(intptr_t)json_integer_value(v) : NULL;
}

static void entry_free(struct sts_entry *e)
{
	if (e) {
		free(e->text);
		free(e);
	}
}

static void keep(struct sts_store *s, struct sts_entry *e)
{
	entry_free(find(s, e->domain));
	json_object_set_new(s->index, e->domain, json_integer((json_int_t)(intptr_t)e));
}

/* An entry from its parts; NULL with err when the policy does not parse. */
static struct sts_entry *entry_new(const char *domain, const char *id, const char *text,
				   size_t len, uint64_t fetched, char *err, size_t errlen)
{
	struct sts_entry *e = vl_calloc(1, sizeof *e);

	if (tls_sts_policy_parse(text, len, &e->policy, err, errlen) < 0) {
		free(e);
		return NULL;
	}
	snprintf(e->domain, sizeof e->domain, "%s", domain);
	snprintf(e->id, sizeof e->id, "%s", id);
	e->fetched = e->checked = fetched;
	e->expires = fetched + e->policy.max_age;
	e->text = vl_strndup(text, len);
	return e;
}

struct sts_entry *sts_entry_load(const char *dir, const char *domain, char *err,
				 size_t errlen)
{
	char path[1400];
	json_error_t je;
	json_t *j;
	const char *id, *text;
	json_int_t fetched;
	struct sts_entry *e = NULL;

	if (!file_name_ok(domain)) {
		snprintf(err, errlen, "\"%s\" is not a domain name", domain);
		return NULL;
	}
	snprintf(path, sizeof path, "%s/%s", dir, domain);
	j = json_load_file(path, 0, &je);
	if (!j)
		snprintf(err, errlen, "%s: %s", path, je.text);
	else if (json_unpack(j, "{s:s, s:I, s:s}", "id", &id, "fetched", &fetched, "policy",
			     &text) < 0 || fetched < 0)
		snprintf(err, errlen, "%s: damaged", path);
	else if ((e = entry_new(domain, id, text, strlen(text), (uint64_t)fetched, err,
				errlen)) == NULL)
		snprintf(err + strlen(err), errlen - strlen(err), " (%s)", path);
	json_decref(j);
	return e;
}

void sts_entry_free(struct sts_entry *e)
{
	entry_free(e);
}

static void load_one(struct sts_store *s, const char *name)
{
	char err[1600];
	struct sts_entry *e = sts_entry_load(s->dir, name, err, sizeof err);

	if (e)
		keep(s, e);
	else
		vl_log(VL_LOG_WARN, "mta-sts: %s; ignored", err);
}

struct sts_store *sts_store_open(const char *dir, char *err, size_t errlen)
{
	DIR *d;
	struct dirent *de;

	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	if (!(d = opendir(dir))) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	struct sts_store *s = vl_calloc(1, sizeof *s);
	snprintf(s->dir, sizeof s->dir, "%s", dir);
	s->index = json_object();
	while ((de = readdir(d)))
		if (file_name_ok(de->d_name))
			load_one(s, de->d_name);
	closedir(d);
	return s;
}

void sts_store_free(struct sts_store *s)
{
	const char *k;
	json_t *v;

	if (!s)
		return;
	json_object_foreach(s->index, k, v)
		entry_free((struct sts_entry *)(intptr_t)json_integer_value(v));
	json_decref(s->index);
	free(s);
}

const struct sts_entry *sts_store_get(const struct sts_store *s, const char *domain)
{
	return find(s, domain);
}

static int write_entry(const struct sts_store *s, const struct sts_entry *e, char *err,
		       size_t errlen)
{
	char path[1400], tmp[1410];
	json_t *j = json_pack("{s:s, s:I, s:s}", "id", e->id, "fetched", (json_int_t)e->fetched,
			      "policy", e->text);
	char *text = json_dumps(j, JSON_COMPACT);
	int fd = -1, rc = -1;

	snprintf(path, sizeof path, "%s/%s", s->dir, e->domain);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (text && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) >= 0 &&
	    vl_write_all(fd, text, strlen(text)) == 0 && fsync(fd) == 0 &&
	    rename(tmp, path) == 0 && vl_fsync_dir(s->dir) == 0)
		rc = 0;
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	free(text);
	json_decref(j);
	return rc;
}

int sts_store_put(struct sts_store *s, const char *domain, const char *id, const char *text,
		  size_t len, uint64_t now, char *err, size_t errlen)
{
	if (!file_name_ok(domain)) {
		snprintf(err, errlen, "\"%s\" is not a domain name", domain);
		return -1;
	}
	if (memchr(text, '\0', len)) {
		snprintf(err, errlen, "MTA-STS policy: a NUL octet");
		return -1;
	}
	struct sts_entry *e = entry_new(domain, id, text, len, now, err, errlen);
	if (!e)
		return -1;
	if (write_entry(s, e, err, errlen) < 0) {
		entry_free(e);
		return -1;
	}
	keep(s, e);
	return 0;
}

void sts_store_confirm(struct sts_store *s, const char *domain, uint64_t now)
{
	struct sts_entry *e = find(s, domain);

	if (e)
		e->checked = now;
}

void sts_store_drop(struct sts_store *s, const char *domain)
{
	char path[1400];
	struct sts_entry *e = find(s, domain);

	if (!e)
		return;
	snprintf(path, sizeof path, "%s/%s", s->dir, e->domain);
	unlink(path);
	entry_free(e);
	json_object_del(s->index, domain);
}

size_t sts_store_count(const struct sts_store *s)
{
	return json_object_size(s->index);
}

/* ---- decisions ---- */

enum sts_txt_state sts_txt_classify(const char *const *recs, const size_t *lens, size_t n,
				    char id[33])
{
	struct tls_sts_txt t;
	char err[128];
	size_t found = 0;
	bool bad = false;

	id[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		/* 3.1: records not starting with v=STSv1 are someone else's */
		if (lens[i] < 8 || memcmp(recs[i], "v=STSv1", 7) != 0 ||
		    (recs[i][7] != ';' && recs[i][7] != ' ' && recs[i][7] != '\t'))
			continue;
		found++;
		if (memchr(recs[i], '\0', lens[i]) ||
		    tls_sts_txt_parse(recs[i], lens[i], &t, err, sizeof err) < 0)
			bad = true;
		else
			memcpy(id, t.id, sizeof t.id);
	}
	if (!found)
		return STS_TXT_NONE;
	return found > 1 || bad ? STS_TXT_INVALID : STS_TXT_RECORD;
}

enum sts_action sts_decide(const struct sts_entry *kept, uint64_t now,
			   enum sts_txt_state txt, const char *txt_id)
{
	bool valid = kept && now < kept->expires;

	switch (txt) {
	case STS_TXT_RECORD:
		return valid && strcmp(kept->id, txt_id) == 0 ? STS_USE_CACHED : STS_FETCH;
	case STS_TXT_NONE:
	case STS_TXT_INVALID:
	case STS_TXT_FAILED:
	default:
		return valid ? STS_USE_CACHED : STS_USE_NONE;
	}
}
