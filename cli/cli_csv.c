/*
 * An RFC 4180 CSV reader, one record at a time from a stream: quoted fields
 * (with commas, "" and line breaks inside), CRLF or LF line ends. Only the
 * current record is held in memory, so a list of millions streams.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void put(struct cli_csv *c, char ch)
{
	if (c->len + 1 >= c->cap) {
		size_t n = c->cap ? 2 * c->cap : 1024;
		char *p = vl_realloc(c->buf, n);
		c->buf = p;
		c->cap = n;
	}
	c->buf[c->len++] = ch;
}

static void new_field(struct cli_csv *c)
{
	if (c->nf == c->fcap) {
		size_t n = c->fcap ? 2 * c->fcap : 16;
		size_t *p = vl_realloc(c->off, n * sizeof(*p));
		c->off = p;
		c->fcap = n;
	}
	c->off[c->nf++] = c->len;
}

static void end_field(struct cli_csv *c)
{
	put(c, 0);
}

/* A UTF-8 byte order mark at the very start is not data (Excel writes one). */
static void skip_bom(struct cli_csv *c)
{
	int a = getc(c->f);

	c->started = true;
	if (a != 0xEF) {
		if (a != EOF)
			ungetc(a, c->f);
		return;
	}
	int b = getc(c->f), d = b == 0xBB ? getc(c->f) : EOF;
	if (b == 0xBB && d == 0xBF)
		return;
	/* Not a BOM: give the octets back (at most one ungetc is portable). */
	fseek(c->f, 0, SEEK_SET);
}

/* True at a record's end: LF, CRLF or end of file. */
static bool at_eol(struct cli_csv *c, int ch)
{
	if (ch == '\r') {
		int n = getc(c->f);
		if (n == '\n')
			return true;
		if (n != EOF)
			ungetc(n, c->f);
		return false;
	}
	return ch == '\n' || ch == EOF;
}

/* A quoted field, after its opening quote; returns the octet after it. */
static int quoted(struct cli_csv *c, char *err, size_t errlen)
{
	unsigned long start = c->next_line;
	int ch;

	for (;;) {
		ch = getc_unlocked(c->f);
		if (ch == EOF) {
			snprintf(err, errlen, "line %lu: quoted field never closed", start);
			return -2;
		}
		if (ch == '\n')
			c->next_line++;
		if (ch != '"') {
			put(c, (char)ch);
			continue;
		}
		ch = getc_unlocked(c->f);
		if (ch != '"')
			break;
		put(c, '"');
	}
	if (ch != ',' && ch != '\n' && ch != '\r' && ch != EOF) {
		snprintf(err, errlen, "line %lu: text after a closing quote", c->next_line);
		return -2;
	}
	return ch;
}

int cli_csv_read(struct cli_csv *c, char *err, size_t errlen)
{
	int ch;

	if (!c->started)
		skip_bom(c);
	c->len = c->nf = 0;
	c->line = ++c->next_line;
	ch = getc_unlocked(c->f);
	if (ch == EOF)
		return 0;
	for (;;) {
		new_field(c);
		if (ch == '"') {
			ch = quoted(c, err, errlen);
			if (ch == -2)
				return -1;
		}
		while (ch != ',' && !at_eol(c, ch)) {
			put(c, (char)ch);
			ch = getc_unlocked(c->f);
		}
		end_field(c);
		if (ch != ',')
			return 1;
		ch = getc_unlocked(c->f);
	}
}

void cli_csv_free(struct cli_csv *c)
{
	free(c->buf);
	free(c->off);
	c->buf = NULL;
	c->off = NULL;
}
