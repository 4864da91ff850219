/*
 * The console's assets: a lookup over the table the Makefile generates
 * from console/www/ (build/gen/con_www.c).
 */
#include "console.h"

#include <string.h>

struct con_file {
	const char *name, *data;
	size_t len;
};
/* build/gen/con_www.c: every file of console/www/, ended by a NULL name */
extern const struct con_file con_files[];

const char *con_ctype(const char *name)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".json", "application/json" },
		{ ".svg", "image/svg+xml" },
	};
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		size_t e = strlen(types[i].ext);
		if (n > e && !strcmp(name + n - e, types[i].ext))
			return types[i].type;
	}
	return "application/octet-stream";
}

bool con_name_ok(const char *name, size_t n)
{
	if (!n || n > 64 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

const char *con_asset(const char *path, size_t *len, const char **ctype)
{
	size_t n = strcspn(path, "?#");

	if (!n) {
		path = "index.html";
		n = strlen(path);
	}
	if (!con_name_ok(path, n))
		return NULL;
	for (const struct con_file *f = con_files; f->name; f++) {
		if (strlen(f->name) == n && !memcmp(f->name, path, n)) {
			*len = f->len;
			*ctype = con_ctype(f->name);
			return f->data;
		}
	}
	return NULL;
}
