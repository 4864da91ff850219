/*
 * Aligned text tables for the human output, and small JSON accessors.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_table_init(struct cli_table *t, size_t ncols, const char **head, const bool *right)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->head = head;
	t->right = right;
}

void cli_table_row(struct cli_table *t, const char **cells)
{
	if (t->nrows == t->cap) {
		size_t n = t->cap ? 2 * t->cap : 16;
		char **p = vl_realloc(t->cells, n * t->ncols * sizeof(*p));
		t->cells = p;
		t->cap = n;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		char *s = vl_strdup(cells[i] ? cells[i] : "-");
		/* A line break in a value would break the table. */
		for (char *p = s; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
		t->cells[t->nrows * t->ncols + i] = s;
	}
	t->nrows++;
}

/* Columns on screen: UTF-8 continuation octets take none. */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static void cell(FILE *out, const char *s, size_t w, bool right, bool last)
{
	size_t pad = w - width(s);

	if (right)
		fprintf(out, "%*s", (int)pad, "");
	fputs(s, out);
	if (!right && !last)
		fprintf(out, "%*s", (int)pad, "");
	if (!last)
		fputs("  ", out);
}

void cli_table_print(struct cli_table *t, FILE *out)
{
	size_t *w = vl_calloc(t->ncols, sizeof(*w));

	for (size_t i = 0; i < t->ncols; i++) {
		w[i] = width(t->head[i]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t n = width(t->cells[r * t->ncols + i]);
			w[i] = n > w[i] ? n : w[i];
		}
	}
	for (size_t i = 0; i < t->ncols; i++)
		cell(out, t->head[i], w[i], t->right && t->right[i], i + 1 == t->ncols);
	fputc('\n', out);
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++)
			cell(out, t->cells[r * t->ncols + i], w[i], t->right && t->right[i],
			     i + 1 == t->ncols);
		fputc('\n', out);
	}
	free(w);
}

void cli_table_free(struct cli_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

const char *cli_jnum(const json_t *obj, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, len, "%.1f", json_real_value(v));
	else if (json_is_string(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else
		snprintf(buf, len, "-");
	return buf;
}

const char *cli_jstr(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s && *s ? s : "-";
}
