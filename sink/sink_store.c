/* The maildir writer: DIR/tmp/ID -> DIR/new/ID, envelope in DIR/env/ID.json.
 * Synchronous on purpose: it serves tests, where simple beats fast. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sink_store {
	char *dir;
};

static int mkdir_p(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

struct sink_store *sink_store_open(const char *dir, char *err, size_t errlen)
{
	static const char *const sub[] = {"", "/tmp", "/new", "/cur", "/env"};
	char path[4096];

	for (size_t i = 0; i < VL_ARRAY_LEN(sub); i++) {
		snprintf(path, sizeof path, "%s%s", dir, sub[i]);
		if (mkdir_p(path) < 0) {
			snprintf(err, errlen, "--maildir %s: %s", path, strerror(errno));
			return NULL;
		}
	}
	struct sink_store *s = vl_calloc(1, sizeof *s);
	s->dir = vl_strdup(dir);
	return s;
}

void sink_store_close(struct sink_store *s)
{
	if (!s)
		return;
	free(s->dir);
	free(s);
}

static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			unlink(path);
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return close(fd);
}

static void envelope_json(const struct smtpd_envelope *e, size_t size,
			  struct vl_buf *b)
{
	const char *r = e->rcpts;

	vl_buf_appends(b, "{\"id\": ");
	vl_buf_json_string(b, e->id);
	vl_buf_appends(b, ", \"mail_from\": ");
	vl_buf_json_string(b, e->mail_from);
	vl_buf_appends(b, ", \"rcpt\": [");
	for (int i = 0; i < e->nrcpt; i++) {
		if (i)
			vl_buf_appends(b, ", ");
		vl_buf_json_string(b, r);
		r += strlen(r) + 1;
	}
	vl_buf_appends(b, "], \"helo\": ");
	vl_buf_json_string(b, e->helo);
	vl_buf_appends(b, ", \"body\": ");
	vl_buf_json_string(b, e->body);
	vl_buf_printf(b, ", \"smtputf8\": %s, \"size\": %zu, \"chunking\": %s, "
		      "\"requiretls\": %s", e->smtputf8 ? "true" : "false", size,
		      e->chunking ? "true" : "false", e->requiretls ? "true" : "false");
	vl_buf_appends(b, ", \"tls\": ");
	if (e->tls_version) {
		vl_buf_appends(b, "{\"version\": ");
		vl_buf_json_string(b, e->tls_version);
		vl_buf_appends(b, ", \"cipher\": ");
		vl_buf_json_string(b, e->tls_cipher);
		vl_buf_printf(b, ", \"resumed\": %s}", e->tls_resumed ? "true" : "false");
	} else {
		vl_buf_appends(b, "null");
	}
	vl_buf_appends(b, ", \"auth\": ");
	vl_buf_json_string(b, e->auth);
	vl_buf_appends(b, ", \"peer\": ");
	vl_buf_json_string(b, e->peer);
	vl_buf_appends(b, ", \"local\": ");
	vl_buf_json_string(b, e->local);
	vl_buf_appends(b, "}\n");
}

int sink_store_put(struct sink_store *s, const struct smtpd_envelope *env,
		   const char *msg, size_t len)
{
	char tmp[4096], dst[4096], envp[4096];
	struct vl_buf json;
	int rc = -1;

	snprintf(tmp, sizeof tmp, "%s/tmp/%s", s->dir, env->id);
	snprintf(dst, sizeof dst, "%s/new/%s", s->dir, env->id);
	snprintf(envp, sizeof envp, "%s/env/%s.json", s->dir, env->id);
	vl_buf_init(&json);
	envelope_json(env, len, &json);
	if (write_file(tmp, msg ? msg : "", len) == 0) {
		if (write_file(envp, json.p, json.len) == 0 && rename(tmp, dst) == 0)
			rc = 0;
		else
			unlink(tmp);
	}
	if (rc < 0)
		vl_log(VL_LOG_ERROR, "maildir %s: %s", s->dir, strerror(errno));
	vl_buf_free(&json);
	return rc;
}
