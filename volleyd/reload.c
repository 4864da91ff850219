/*
 * SIGHUP: the configuration file read again. A file that does not load,
 * or whose keys or bounce rules do not, is refused as a whole (logged; the
 * running configuration stays). A good one goes to the delivery thread
 * (domain rules, rates, routes, TLS policies, retries, DKIM, bounce
 * rules) and to the log (level, file, syslog). What only a restart can
 * change is named in the log and keeps its running value.
 */
#include "volleyd.h"

#include <stdio.h>
#include <string.h>

/* Keys (or groups, "api.") a running volleyd cannot change. */
static const char *const restart_keys[] = {
	"data_dir", "hostname", "workers", "max_message_size", "events.", "api.", "console.",
	"spool.", "dns.", "timeouts.", "egress", "pools", "tls_rpt.", "defaults.max_age",
	"submission.listen", "submission.implicit_tls", "submission.cert", "submission.key",
	"submission.threads", "submission.max_message_size", "submission.auth_cache_ttl",
	"submission.auth_cache_size", "feedback.", "unsubscribe.", "webhooks", NULL,
};

/* The printed configuration as "group.key" -> its text; a list
 * ("domains = ( ... );") is one value. */
static json_t *flatten(const struct cfg *c)
{
	struct vl_buf b;
	json_t *m = json_object();
	char group[64] = "", list[160] = "";
	struct vl_buf acc;

	vl_buf_init(&b);
	vl_buf_init(&acc);
	cfg_print(c, &b);
	vl_buf_append(&b, "", 1);   /* NUL-terminated */
	for (char *line = b.p, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		const char *eq = strstr(line, " = ");
		if (*list) {             /* inside a list: gather to its end */
			vl_buf_appends(&acc, line);
			if (strcmp(line, ");") == 0) {
				json_object_set_new(m, list, json_stringn(acc.p, acc.len));
				list[0] = '\0';
			}
		} else if (strcmp(line, "};") == 0) {
			group[0] = '\0';
		} else if (eq && strcmp(eq, " = {") == 0) {
			snprintf(group, sizeof group, "%.*s", (int)(eq - line), line);
		} else if (eq && strncmp(eq, " = (", 4) == 0) {
			const char *k = line + strspn(line, " ");   /* in a group: group.key */
			snprintf(list, sizeof list, "%s%s%.*s", group, *group ? "." : "",
				 (int)(eq - k), k);
			acc.len = 0;
			vl_buf_appends(&acc, eq);
			if (strcmp(eq, " = ();") == 0 || strstr(eq, ");")) {
				json_object_set_new(m, list, json_stringn(acc.p, acc.len));
				list[0] = '\0';
			}
		} else if (eq) {
			char key[160];
			const char *k = line + strspn(line, " ");
			snprintf(key, sizeof key, "%s%s%.*s", group, *group ? "." : "",
				 (int)(eq - k), k);
			json_object_set_new(m, key, json_string(eq + 3));
		}
	}
	vl_buf_free(&acc);
	vl_buf_free(&b);
	return m;
}

static bool needs_restart(const char *key)
{
	for (size_t i = 0; restart_keys[i]; i++) {
		size_t n = strlen(restart_keys[i]);
		if (restart_keys[i][n - 1] == '.' ? strncmp(key, restart_keys[i], n) == 0 :
		    strcmp(key, restart_keys[i]) == 0)
			return true;
	}
	return false;
}

static void differs(json_t *a, json_t *b, const char *key)
{
	json_t *x = json_object_get(a, key), *y = json_object_get(b, key);

	if (needs_restart(key) && !(x && y && json_equal(x, y)))
		vl_log(VL_LOG_WARN, "volleyd: reload: %s changed: needs a restart (the running "
		       "value stays)", key);
}

/* Log each key that changed and that only a restart applies. */
static void note_restart_keys(const struct cfg *old, const struct cfg *new)
{
	json_t *a = flatten(old), *b = flatten(new);
	const char *k;
	json_t *v;

	json_object_foreach(a, k, v)
		differs(a, b, k);
	json_object_foreach(b, k, v)
		if (!json_object_get(a, k))
			differs(a, b, k);
	json_decref(a);
	json_decref(b);
}

/* The log's settings from the new file (its level unless --verbose). */
static void reload_log(const struct cfg *c, const struct vd_opts *o)
{
	char buf[4096], err[512];
	const char *file = vd_log_file(c, o->foreground, buf, sizeof buf);

	if (!o->verbose)
		vl_log_set_level(cfg_log_level(c));
	if (vl_log_open("volleyd", file, c->log.syslog, !o->foreground, err, sizeof err) < 0)
		vl_log(VL_LOG_ERROR, "volleyd: reload: %s; the log stays where it was", err);
}

void vd_reload(struct vd_daemon *v, struct vd_cfgs *cfgs, const struct vd_opts *o)
{
	struct cfg *c = vl_calloc(1, sizeof *c);
	char err[512];

	vd_notify("RELOADING=1");
	if (vl_log_reopen(err, sizeof err) < 0)   /* logrotate may send HUP too */
		vl_log(VL_LOG_ERROR, "volleyd: SIGHUP: %s", err);
	vl_log(VL_LOG_INFO, "volleyd: SIGHUP: reloading %s", o->config ? o->config : "(defaults)");
	if (cfg_load(c, o->config, err, sizeof err) < 0)
		goto refuse;
	if (o->data_dir) {
		free(c->data_dir);
		c->data_dir = vl_strdup(o->data_dir);
	}
	if (vd_check(c, err, sizeof err) < 0 || sched_reload(v->sc, c, err, sizeof err) < 0)
		goto refuse;
	if (sub_server_reload_users(v->smtp, c, err, sizeof err) < 0)
		vl_log(VL_LOG_ERROR, "volleyd: reload: submission users: %s; the running users "
		       "stay", err);
	note_restart_keys(vd_current(cfgs), c);
	cfgs->v = vl_realloc(cfgs->v, (cfgs->n + 1) * sizeof *cfgs->v);
	cfgs->v[cfgs->n++] = c;
	reload_log(c, o);
	vl_log(VL_LOG_INFO, "volleyd: configuration reloaded");
	vd_notify("READY=1");
	return;
refuse:
	vl_log(VL_LOG_ERROR, "volleyd: reload refused: %s; the running configuration stays", err);
	cfg_free(c);
	free(c);
	vd_notify("READY=1");
}
